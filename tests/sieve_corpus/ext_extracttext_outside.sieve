require ["mime", "foreverypart", "extracttext", "variables"];
extracttext "x";
