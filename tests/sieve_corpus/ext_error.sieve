require ["ihave", "fileinto"];
fileinto "Before";
error "Custom failure";
