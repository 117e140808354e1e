require ["fileinto", "mailbox", "variables"];
if header :matches "Mailing-List" "contact *-help@*;*" {
    fileinto :create "Lists.${1}";
} elsif exists "List-Id" {
    fileinto :create "Lists";
}
