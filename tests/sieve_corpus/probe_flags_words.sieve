require ["imap4flags"];
addflag "one two  three";
removeflag "two";
