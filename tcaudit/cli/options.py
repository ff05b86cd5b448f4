"""The option machinery the commands share: the reading options (--netns, --dev, --hook,
--direction, --vendors, --no-cache) as one `Reading`, --format, --priority, --fail-on,
durations, and writing a result or warnings."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tcaudit.errors import UsageError
from tcaudit.output.interface import Format, formats_for, formatter

if TYPE_CHECKING:  # the inventory is imported when a command runs, not for --help
    from tcaudit.inventory.scan import Selection


def parse_duration(text: str) -> float:
    """ "10s", "500ms", "2m" or plain seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    for suffix in ("ms", "s", "m"):
        if text.endswith(suffix):
            number, scale = text[: -len(suffix)], units[suffix]
            break
    else:
        number, scale = text, 1.0
    try:
        value = float(number) * scale
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 10s, 500ms or 2m") from None
    if not 0 < value <= 24 * 3600:
        raise click.BadParameter("a duration between 1ms and 24h")
    return value


# where `ip netns` keeps named namespaces: what --netns completes (read, never created)
NETNS_DIRS: tuple[str, ...] = ("/run/netns", "/var/run/netns")
HOOK_NAMES = ("tcx/ingress", "clsact/ingress", "tcx/egress", "clsact/egress")


def _plain(name: str) -> bool:
    """A name a shell can be offered as it is: printable, no space, no quote, no glob
    (a name chosen by whoever made the namespace or interface must not become a second
    candidate, a command or a pattern in the user's shell)."""
    return bool(name) and name.isprintable() and not any(
        ch.isspace() or ch in "\\'\"`$*?[]{}();&|<>!#~" for ch in name
    )


def _listed(directory: str) -> list[str]:
    try:
        return [name for name in os.listdir(directory) if _plain(name)]
    except OSError:
        return []


def complete_netns(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion for --netns: the keywords and prefixes, then the named namespaces
    (from /run/netns, never created)."""
    names = {"all", "self", "pid:", "inode:", "lab:"}
    for directory in NETNS_DIRS:
        names.update(_listed(directory))
    return sorted(n for n in names if n.startswith(incomplete))


def complete_dev(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion for --dev: the interfaces of the namespace the shell runs in."""
    return sorted(n for n in _listed("/sys/class/net") if n.startswith(incomplete))


def complete_hook(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    return [h for h in HOOK_NAMES if h.startswith(incomplete)]


SELECTOR_HELP = (
    "Network namespace to read: all (default), self, a netns name, pid:N, a path "
    "(/proc/N/ns/net, /run/netns/X), inode:N or lab:NAME. Repeatable."
)
FAIL_ON = click.Choice(["blind", "warning", "never"])


@dataclass(frozen=True)
class Reading:
    """The options every command that reads hooks shares (contracts.md)."""

    selection: Selection
    vendor_files: tuple[str, ...]
    use_cache: bool = True


def resolve_lab(selectors: Sequence[str]) -> tuple[str, ...]:
    """``lab:NAME`` selectors become the names of the namespaces the lab made for NAME,
    from the lab's own record. The CLI does this, so the inventory never imports the lab
    (it sits beside the layers); every other selector is passed on as given."""
    if not any(s.startswith("lab:") for s in selectors):
        return tuple(selectors)
    from tcaudit.lab.scenarios import namespaces_of

    resolved: list[str] = []
    for selector in selectors:
        kind, _, value = selector.partition(":")
        if kind != "lab" or not value:
            resolved.append(selector)
            continue
        names = namespaces_of(value)
        if not names:
            raise UsageError(f"--netns {selector}: no lab scenario named {value!r} is up")
        resolved += names
    return tuple(resolved)


def reading_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --netns/--dev/--hook/--direction/--vendors and pass them as one ``reading``."""

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        from tcaudit.inventory.scan import Selection, hooks_for

        direction = kwargs.pop("direction")
        reading = Reading(
            selection=Selection(
                netns=resolve_lab(kwargs.pop("netns")),
                devs=kwargs.pop("devs"),
                hooks=hooks_for(kwargs.pop("hooks"), None if direction == "both" else direction),
            ),
            vendor_files=kwargs.pop("vendor_files"),
            use_cache=not kwargs.pop("no_cache"),
        )
        return func(reading=reading, **kwargs)

    options = [
        click.option(
            "--netns",
            "netns",
            multiple=True,
            metavar="SEL",
            help=SELECTOR_HELP,
            shell_complete=complete_netns,
        ),
        click.option(
            "--dev",
            "devs",
            multiple=True,
            metavar="IFNAME",
            help="Interface name. Repeatable.",
            shell_complete=complete_dev,
        ),
        click.option(
            "--hook",
            "hooks",
            multiple=True,
            metavar="HOOK",
            help="tcx/ingress, tcx/egress, clsact/ingress or clsact/egress. Repeatable.",
            shell_complete=complete_hook,
        ),
        click.option(
            "--direction",
            type=click.Choice(["ingress", "egress", "both"]),
            default="both",
            show_default=True,
            help="Shorthand for both hook kinds (tcx and clsact) of one direction.",
        ),
        click.option(
            "--vendors",
            "vendor_files",
            multiple=True,
            metavar="FILE",
            type=click.Path(dir_okay=False),
            help="Extra vendor fingerprints (JSON, the shape of the shipped registry). Repeatable.",
        ),
        click.option(
            "--no-cache",
            "no_cache",
            is_flag=True,
            help="Analyse every program again instead of reusing verdicts from "
            "$TCAUDIT_CACHE_DIR (default /var/cache/tcaudit).",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def format_option(document: str, what: str) -> Callable[[Any], Any]:
    """--format, its choices (default first) from the output layer's format table."""
    choices = formats_for(document)
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=choices[0],
        show_default=True,
        help=what,
    )


PRIORITY_OPTION = click.option(
    "--priority",
    type=click.IntRange(1, 0xFFFF),
    help="Evaluate this classifier_priority (default: the one CWS uses here, else 10).",
)


ALL_OPTION = click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Table: list every blind hook, namespace and finding (default: alike ones once, "
    "with their count).",
)
WIDE_OPTION = click.option(
    "--wide",
    is_flag=True,
    help="Table: every column in full, whatever the terminal's width (default: fit COLUMNS, "
    "the terminal, or 120 columns in a pipe).",
)


def chosen_format(name: str, *, wide: bool = False, to_file: bool = False) -> Format:
    """The chosen format; JSON is pretty on a terminal and compact for pipes; tables fit
    the terminal (or ``--wide``) and use colour only on one (output/layout.py). Output
    going to a file (``-o``) is laid out as for a pipe: 120 columns, no colour."""
    if name == "json":
        return formatter(name, pretty=sys.stdout.isatty())
    if name == "table":
        from tcaudit.output.layout import PIPED, WIDE, detect

        if to_file:
            return formatter(name, layout=WIDE if wide else PIPED)
        return formatter(name, layout=detect(wide=wide))
    return formatter(name)


def emit(output: str) -> None:
    click.echo(output, nl=False)


def check_writable(output: str) -> None:
    """Fail before any work when ``-o`` cannot be written: a scratch file is created
    beside it (and removed), which also catches read-only and full file systems."""
    if output == "-":
        return
    target = Path(output)
    probe = target.with_name(f".{target.name}.check{os.getpid()}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise UsageError(f"-o {output}: cannot write it: {err.strerror}") from None
    os.close(fd)
    probe.unlink(missing_ok=True)


def write_output(output: str, text: str) -> None:
    """``-o PATH``: written to a temporary name beside it and renamed, 0644 (the Agent's
    check reads it as another user): never half a file; ``-`` is stdout."""
    if output == "-":
        click.echo(text, nl=False)
        return
    target = Path(output)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)  # whatever the umask
        tmp.replace(target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"-o {output}: cannot write it: {err.strerror}") from None


def warn(lines: Sequence[str]) -> None:
    if not lines:
        return
    from tcaudit.output.sanitize import shown  # names in warnings are other vendors'

    for line in lines:
        click.echo(f"tcaudit: warning: {shown(line)}", err=True)
