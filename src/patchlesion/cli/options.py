"""Building blocks of the ``patchlesion`` argument parser (:mod:`patchlesion.cli.parser`): the parser
class whose errors are one line, the help formatter, argument types, and the option groups that
several commands share."""

from __future__ import annotations

import argparse

from patchlesion.engine.settings import TrainSettings

QUIET_HELP = "only warnings and errors (before or after the command)"
#: Help of the predict options whose default is the training value in run.json.
FROM_RUN_JSON = "default: the value in the run.json beside --model"


class Parser(argparse.ArgumentParser):
    """Bad arguments end in one ``error:`` line and exit status 2, as every other bad input does."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`.\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks and shows each option's default where it has one
    (a list as its words: ``600 450``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required or any(action.default is unset for unset in (None, False, argparse.SUPPRESS)) or "default" in text:
            return text
        if isinstance(action.default, list):
            return f"{text} (default: {' '.join(map(str, action.default))})"
        return super()._get_help_string(action)


def whole_number(minimum: int):
    """An argparse ``type``: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def positive_number(text: str) -> float:
    """An argparse ``type``: a number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


POSITIVE, NON_NEGATIVE = whole_number(1), whole_number(0)


def package_version() -> str:
    """The installed package's version (package metadata), else the source tree's ``__version__``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("patchlesion")
    except PackageNotFoundError:
        from patchlesion import __version__

        return __version__


class VersionAction(argparse.Action):
    """``--version``: looks the version up only when asked (keeps ``patchlesion --help`` light)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help="show the version and exit"):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"patchlesion {package_version()}")
        parser.exit()


#: ``-q`` after the command: its default leaves the value given before the command in place.
QUIET_AFTER = Parser(add_help=False)
QUIET_AFTER.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)


def command_parser(sub, name: str, text: str, func) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter, parents=[QUIET_AFTER])
    parser.set_defaults(func=func)
    return parser


def add_settings(parser: argparse.ArgumentParser, command: str, title: str, from_run_json: tuple[str, ...] = ()) -> None:
    """The settings that ``command`` takes (:meth:`TrainSettings.cli_options`), as one option group;
    those named in ``from_run_json`` default to the training record's value instead."""
    group = parser.add_argument_group(title)
    for flag, options in TrainSettings.cli_options(command):
        if flag in from_run_json:
            options = {**options, "default": None, "help": f"{options['help']} ({FROM_RUN_JSON})"}
        group.add_argument(flag, **options)


def add_job_options(parser: argparse.ArgumentParser, *, cache: bool = True, torch_home: bool = False) -> None:
    """Options of how a job runs on this machine (not the method): threads, image cache, weight cache."""
    group = parser.add_argument_group("job")
    group.add_argument("--threads", type=POSITIVE, default=None, help="CPU threads for PyTorch (default: PyTorch's choice)")
    if cache:
        group.add_argument("--cache", default=None, help="prepared image cache directory (patchlesion prepare); default: decode the images")
    if torch_home:
        group.add_argument("--torch-home", default=None, help="weight cache folder (default: $TORCH_HOME or resources/torch)")
