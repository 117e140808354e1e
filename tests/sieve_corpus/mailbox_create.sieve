require ["fileinto", "mailbox"];
fileinto :create "Created.Sub";
