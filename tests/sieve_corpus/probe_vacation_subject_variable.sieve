require ["vacation", "variables"];
if header :matches "subject" "*" {
    vacation :subject "Re: ${1}" :days 2 "I will read it later.";
}
