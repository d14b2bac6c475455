"""schemathesis hooks for the contract run (``SCHEMATHESIS_HOOKS=st_hooks``): how to send
a body of a media type it does not know. The SSF push receiver takes one compact JWT
(``application/secevent+jwt``, RFC 8935): text on the wire."""

import schemathesis

schemathesis.serializer.alias("application/secevent+jwt", "text/plain")
