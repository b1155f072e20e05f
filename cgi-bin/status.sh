#!/bin/sh
# status.sh: choose the HTTP status with the CGI `Status` header (§6.3.3).
printf 'Status: 404 Not Found\n'
printf 'Content-Type: text/plain\n\n'
printf 'There is no widget %s here.\n' "${PATH_INFO:-/}"
