require ["fileinto", "imap4flags"];
if header :is "X-Spam-Flag" "YES" {
    fileinto :flags "$Junk" "Junk";
    stop;
}
addflag "$NotJunk";
