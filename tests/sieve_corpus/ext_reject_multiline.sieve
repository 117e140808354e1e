require "reject";
reject text:
This mailbox does not
accept mail from you.
.
;
