require "enotify";
notify :from "roadrunner@acme.example.com" :importance "3" :message "New mail"
    "mailto:pager@example.org";
