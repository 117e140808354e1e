require ["imap4flags", "fileinto"];
setflag "\\Seen \\seen $Work";
addflag "$work";
fileinto "Tagged";
