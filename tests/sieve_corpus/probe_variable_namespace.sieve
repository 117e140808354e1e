require "variables";
set "ns.name" "x";
