#!/bin/sh
# redirect.sh: the two kinds of Location (RFC 3875 §6.2.2 and §6.2.3).
#   /cgi-bin/redirect.sh        -> a local redirect: the server itself serves
#                                  /cgi-bin/hello.sh; the client never knows.
#   /cgi-bin/redirect.sh?away   -> a client redirect: the server answers 302
#                                  and the browser makes a second request.
if [ "$QUERY_STRING" = "away" ]; then
    printf 'Location: https://www.rfc-editor.org/rfc/rfc3875\n\n'
else
    printf 'Location: /cgi-bin/hello.sh\n\n'
fi
