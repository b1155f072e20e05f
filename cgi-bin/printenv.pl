#!/usr/bin/perl
# printenv.pl: the lecture's classic, told again: every variable, sorted,
# as NAME="value", with the quotes and backslashes in values escaped.
use strict;
use warnings;

print "Content-Type: text/plain; charset=utf-8\n\n";
foreach my $name (sort keys %ENV) {
    (my $value = $ENV{$name}) =~ s/(["\\])/\\$1/g;
    print qq($name="$value"\n);
}
