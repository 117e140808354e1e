require ["imap4flags", "variables", "fileinto"];
set "tags" "$Work";
addflag "tags" "$Urgent";
if header :contains "subject" "present" { addflag "tags" "\\Seen"; }
fileinto :flags "${tags}" "Work";
keep;
