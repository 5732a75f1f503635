"""Getting datasets and pretrained weights onto disk, verified: resumable HTTP downloads
(:mod:`.download`), the Dataverse API (:mod:`.dataverse`), safe archive extraction
(:mod:`.archives`), the HAM10000, ISIC 2018 test-set and ISIC 2019 recipes (:mod:`.datasets`), the
ISIC 2019 folder dataset written from its files (:mod:`.isic2019`) and the ImageNet weight files
(:mod:`.weights`). The only part of the package that touches the network; it runs in
download rules only, never in training jobs or tests.
"""
