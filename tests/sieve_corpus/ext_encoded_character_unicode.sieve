require ["encoded-character", "fileinto", "mailbox"];
fileinto :create "${unicode:43 61 66 E9}";
