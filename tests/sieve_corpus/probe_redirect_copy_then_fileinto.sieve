require ["copy", "fileinto"];
redirect :copy "bob@example.org";
fileinto "Filed";
