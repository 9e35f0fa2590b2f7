"""`ketch --help` and README's flag table, both drawn from the one flag table."""

from __future__ import annotations

from .flags import GROUPS

__all__ = ["USAGE", "markdown_table", "usage"]


def usage() -> str:
    """`ketch --help`: every flag, grouped as etcd's help, ketch's own marked."""
    out = [
        "Usage:",
        "",
        "  ketch [flags]",
        "    Start a ketch server (etcd's v3 API).",
        "",
        "  ketch --version",
        "    Show the version of ketch.",
        "",
        "  ketch -h | --help",
        "    Show this help.",
        "",
        "Flags marked (3.5) are etcd 3.5's additions; (ketch) are ketch's own. Flags",
        "marked [no effect] are accepted and checked as etcd checks them, and ketch",
        "logs one warning naming the flag and why when one is set (README's flag table",
        "lists the reasons).",
    ]
    for group, flags in GROUPS:
        shown = [f for f in flags if not f.hidden]
        if not shown:
            continue
        out += ["", f"{group}:"]
        for f in shown:
            marks = "".join(
                m for m, on in ((" (3.5)", f.since == "3.5"), (" (ketch)", f.since == "ketch"),
                                (" [no effect]", bool(f.reason))) if on
            )  # fmt: skip
            out.append(f"  --{f.name} '{f.shown()}'{marks}")
            if f.help:
                out.append(f"    {f.help}")
    out += [
        "",
        "Every flag can also be set by the environment variable ETCD_<FLAG> (upper case,",
        "dashes as underscores: ETCD_DATA_DIR for --data-dir); a flag on the command line",
        "wins over its variable.",
        "",
    ]
    return "\n".join(out)


def markdown_table() -> str:
    """README's flag table: every accepted flag (etcd 3.5's additions marked), its
    default, and what ketch does with it."""
    rows = ["| flag | default | in ketch |", "|---|---|---|"]
    for group, flags in GROUPS:
        if group == "Ignored":
            names = ", ".join(f"`--{f.name}`" for f in flags)
            rows.append(f"| {names} | | no effect: {flags[0].reason} |")
            continue
        for f in flags:
            if f.name == "version":
                continue
            default = f.shown().replace("|", "\\|")
            default = f"`{default}`" if default else ""
            ketch_only = " (ketch only)" if f.since == "ketch" else ""
            what = f"no effect: {f.reason}" if f.reason else f.help + ketch_only
            mark = " (3.5)" if f.since == "3.5" else ""
            rows.append(f"| `--{f.name}`{mark} | {default} | {what} |")
    return "\n".join(rows) + "\n"


USAGE = usage()
