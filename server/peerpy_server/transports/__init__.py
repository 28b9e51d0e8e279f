"""How bytes reach the broker: each module turns one kind of socket into sessions and answers.

* :mod:`~peerpy_server.transports.websocket`: the built-in server, one
  :class:`~peerpy_server.transports.websocket.TcpSession` per accepted TCP
  connection (an :class:`asyncio.BufferedProtocol` over websockets' sans-I/O
  protocol);
* :mod:`~peerpy_server.transports.asgi`: one ASGI ``http`` or ``websocket``
  scope (:mod:`peerpy_server.asgi` is the public app around it);
* :mod:`~peerpy_server.transports.http`: the plain HTTP API both answer with;
* :mod:`~peerpy_server.transports.stun`: the ``--stun`` UDP responder.

A transport reaches the broker only through its
:class:`~peerpy_server.core.host.Host` and the HTTP API through its
:class:`~peerpy_server.core.host.HttpView`.
"""
