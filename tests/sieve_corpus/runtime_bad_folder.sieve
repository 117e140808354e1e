require ["fileinto", "variables"];
set "f" "a//b";
fileinto "${f}";
