# Back-references (glibc's ERE runs them, and so Pigeonhole): a doubled
# letter, three same digits, a group that is its own echo, the group in a
# variable, and the comparator deciding the case of the echo too.
require ["regex", "variables", "fileinto", "mailbox"];
if header :regex "subject" "([a-z])\\1" { fileinto :create "Doubled"; }
if header :regex "subject" "([0-9])\\1\\1" { fileinto :create "Triple"; }
if header :regex "subject" "(P)E\\1" { fileinto :create "Pep-${1}"; }
if header :comparator "i;octet" :regex "subject" "(p)E\\1" { fileinto :create "Octet"; }
if header :regex "subject" "(p)e\\1" { fileinto :create "Casemap"; }
if header :regex "subject" "(x)?y\\1" { fileinto :create "Unset"; }
if address :regex :localpart "from" "^(mo)(n)ey$|^(.*)\\3$" { fileinto :create "Local"; }
