require ["include", "variables", "fileinto"];
global "count";
set "count" "";
include :personal :once "addmark";
include :personal :once "addmark";
fileinto "Marks${count}";
