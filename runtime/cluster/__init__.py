"""Aural on Ray Serve: many accelerators and machines behind one realtime endpoint.

    ingress (FastAPI websocket, `ingress.py`)  ──handle, streaming──▶  engine replicas (`replica.py`)
      the session core, audio decoding, VAD                              one model and KV pool each
      `RemoteEngine` (`remote.py`) as its engine                        conversations' caches by id

Every call for a conversation goes to the replica holding its cache (`router.py`); a new conversation goes to
the replica with the most free KV. The ingress keeps each conversation's items and the token ids of its replies
(`SessionMemory`), so a conversation whose replica is lost is rebuilt on another one, token for token.
`deploy.py` builds the Serve application (`aural serve --ray`, or `serve run aural.runtime.cluster.deploy:app`).

Only this package imports ray; nothing outside the runtime imports it.
"""
