require "enotify";
notify :message "You have mail" "mailto:pager@example.org";
