#!/bin/sh
# hello.sh: the smallest useful CGI script, for measuring what a process per
# request costs (compare lesson02_hello's fixed answer).
printf 'Content-Type: text/plain\n\nHello from process %s\n' "$$"
