require ["include", "variables"];
global "count";
set "count" "${count}x";
