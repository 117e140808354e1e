redirect "wile@example.org";
redirect "bugs@example.com";
keep;
