require ["include", "variables"];
global "seen";
set "seen" "yes";
return;
set "seen" "no";
