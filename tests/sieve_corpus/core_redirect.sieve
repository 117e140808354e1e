redirect "wile@example.org";
