require "imap4flags";
if header :contains "subject" "present" { setflag "\\Flagged $Gift"; }
