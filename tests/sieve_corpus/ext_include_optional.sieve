require ["include", "fileinto"];
include :personal :optional "not-there";
fileinto "AfterOptional";
