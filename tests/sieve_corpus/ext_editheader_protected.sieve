require "editheader";
deleteheader "received";
