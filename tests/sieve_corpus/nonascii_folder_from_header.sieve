require ["fileinto", "mailbox", "variables"];
if header :matches "subject" "* *" { fileinto :create "Topics.${1}"; }
