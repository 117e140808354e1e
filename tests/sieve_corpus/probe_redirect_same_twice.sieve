redirect "bob@example.org";
redirect "BOB@example.org";
