require ["enotify", "variables"];
if header :matches "from" "*" {
    set :encodeurl "f" "${1}";
    notify :importance "1" "mailto:phone@example.org?subject=${f}";
}
