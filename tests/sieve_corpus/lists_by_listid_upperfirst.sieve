require ["fileinto", "mailbox", "variables"];
if header :matches "List-Id" "*<*>*" {
    if string :matches "${2}" "*.*" {
        set :upperfirst :lower "name" "${1}";
        fileinto :create "Lists.${name}";
    }
}
