require ["include", "fileinto"];
include :personal "spamrules";
if header :contains "subject" "present" { fileinto "AfterInclude"; }
