require ["fileinto", "envelope", "variables", "mailbox", "imap4flags", "duplicate"];
# Machines' mail by sender domain, everything bulk into one folder, the
# same notification only once.
if header :contains "precedence" ["bulk", "junk", "list"] {
    if header :matches "from" "*@*" { set "domain" "${2}"; }
    if duplicate :header "message-id" :handle "bulk" { discard; stop; }
    fileinto :create "Bulk";
    stop;
}
if anyof (header :contains "auto-submitted" "auto-", envelope :is "from" "") {
    addflag "\\Seen";
    fileinto :create "Automatic";
    stop;
}
if size :over 2K {
    fileinto :create :flags "$Large" "Large";
}
if header :contains "subject" ["invoice", "order", "receipt"] {
    fileinto :create "Paperwork";
}
