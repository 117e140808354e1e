require ["imap4flags", "fileinto"];
setflag "\\Seen";
addflag ["\\Flagged", "$Important"];
removeflag "\\Seen";
fileinto "Flagged";
