require ["fileinto", "mailbox"];
fileinto :create "Café.Été";
fileinto :create "Ελληνικά";
