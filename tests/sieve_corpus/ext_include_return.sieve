require ["include", "fileinto", "variables"];
global "seen";
include :personal "setglobal";
if string :is "${seen}" "yes" { fileinto "GlobalSet"; }
