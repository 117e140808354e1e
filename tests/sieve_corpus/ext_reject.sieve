require "reject";
if header :is "X-Spam-Flag" "YES" { reject "I do not accept unsolicited mail."; }
