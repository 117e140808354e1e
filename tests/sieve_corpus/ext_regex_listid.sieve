require ["regex", "variables", "fileinto", "mailbox"];
if header :regex "list-id" "<([a-z0-9-]+)[.@]" {
    set :lower "l" "${1}";
    fileinto :create "Lists.${l}";
}
