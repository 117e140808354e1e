require "variables";
set :shout "a" "b";
