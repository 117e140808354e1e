require ["fileinto", "mailbox", "variables"];
# One folder per list, named after the list's id: Lists.<first label>
if header :matches "List-Id" "*<*.*>" {
    set :lower "list" "${2}";
    fileinto :create "Lists.${list}";
    stop;
}
