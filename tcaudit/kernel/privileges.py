"""Check the capabilities a command needs before it starts (exit 3 with one clear line)."""

from __future__ import annotations

from tcaudit.errors import EnvironmentProblem

CAP_NET_ADMIN = 12
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
CAP_NAMES = {
    CAP_NET_ADMIN: "CAP_NET_ADMIN",
    CAP_SYS_PTRACE: "CAP_SYS_PTRACE",
    CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
}

# setns(2) and BPF_PROG_GET_FD_BY_ID need CAP_SYS_ADMIN; BPF_PROG_QUERY on TCX and every
# tc change need CAP_NET_ADMIN; /proc/PID/ns/net of other users' processes needs ptrace
# read access (CAP_SYS_PTRACE for root).
READ_CAPS = (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE)


def effective_capabilities(status_path: str = "/proc/self/status") -> int:
    with open(status_path, encoding="ascii") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def require(
    command: str, caps: tuple[int, ...] = READ_CAPS, *, effective: int | None = None
) -> None:
    have = effective_capabilities() if effective is None else effective
    missing = [CAP_NAMES[c] for c in caps if not have >> c & 1]
    if missing:
        raise EnvironmentProblem(
            f"tcaudit {command} needs {' and '.join(missing)} (run it as root, e.g. with sudo)"
        )
