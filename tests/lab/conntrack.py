"""Flush the connection-tracking table of the namespace it runs in (``conntrack -F``).

Run as ``ip netns exec NS python tests/lab/conntrack.py`` in a lab NAT: every
NAT mapping is forgotten, so the next packet of each flow gets a new one (NAT
rebinding).  One ctnetlink request (IPCTNL_MSG_CT_DELETE without attributes
deletes every entry of the family), so the lab needs no conntrack-tools.
"""

from __future__ import annotations

import errno
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_DELETE = 2
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR = 2


def flush(family: int = socket.AF_INET) -> None:
    """Delete every conntrack entry of ``family``; raise OSError if the kernel refuses."""
    nfgen = struct.pack("=BBH", family, 0, 0)  # nfgenmsg: family, version, res_id
    kind = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
    header = struct.pack("=IHHII", 16 + len(nfgen), kind, NLM_F_REQUEST | NLM_F_ACK, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.bind((0, 0))
        sock.send(header + nfgen)
        reply = sock.recv(4096)
    _, reply_type = struct.unpack_from("=IH", reply)
    if reply_type == NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", reply, 16)
        if error:
            raise OSError(-error, f"conntrack flush: {errno.errorcode.get(-error, error)}")


if __name__ == "__main__":
    flush()
