#!/bin/sh
# printenv.sh: answer with the environment this CGI script was started with.
# The blank line after Content-Type ends the CGI header block (RFC 3875 §6.3);
# everything after it is the body. `env` lists the variables, `sort` orders them.
printf 'Content-Type: text/plain; charset=utf-8\n\n'
env | LC_ALL=C sort
