require ["envelope", "subaddress", "fileinto", "mailbox", "variables"];
if envelope :detail :matches "to" "*" {
    if string :is "${1}" "" { keep; stop; }
    set :upperfirst "folder" "${1}";
    fileinto :create "Plus.${folder}";
}
