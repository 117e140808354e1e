require "enotify";
# RFC 6068 section 2: the "to" part is addr-spec *("," addr-spec)
notify "mailto:pager@example.org,second@example.org";
