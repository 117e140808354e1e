keep;
keep;
discard;
stop;
redirect "never@example.org";
