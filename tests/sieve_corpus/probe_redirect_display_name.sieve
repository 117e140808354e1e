redirect "Bob <bob@example.org>";
