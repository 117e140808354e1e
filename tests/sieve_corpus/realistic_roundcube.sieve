require ["fileinto","imap4flags","envelope","subaddress","variables","mailbox","copy","vacation"];
# rule:[Spam]
if anyof (header :is "x-spam-flag" "YES", header :contains "x-spam-level" "*******")
{
	fileinto :flags "$Junk \\Seen" "Junk";
	stop;
}
# rule:[Lists]
if header :matches "list-id" "*<*.*>*"
{
	set :lower "listname" "${2}";
	fileinto :create "Lists.${listname}";
	stop;
}
# rule:[Plus addressing]
if envelope :detail :matches "to" "?*"
{
	set :lower :upperfirst "tag" "${0}";
	fileinto :create "Tags.${tag}";
}
# rule:[Boss]
if address :is "from" ["alice@example.org", "carol@example.org"]
{
	addflag "\\Flagged";
	redirect :copy "roadrunner.mobile@example.net";
}
# rule:[Away]
if not exists "list-id"
{
	vacation :days 5 :subject "Away until Monday" :addresses ["rr@acme.example.com"]
	  "I am away until Monday and will answer then.";
}
